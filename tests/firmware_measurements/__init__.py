"""Tests of the firmware_measurements/ directory: schema, templates, generated examples."""
