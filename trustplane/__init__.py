"""trustplane: the command-line front end over trustcore (event-log analysis)."""
