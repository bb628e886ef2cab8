"""A FAKE of a Kubernetes API server, for tests and benchmarks; not a Kubernetes API server.

It answers, over HTTPS on 127.0.0.1 with its own CA, the parts of the Kubernetes API that
trustplane's cluster sync and `kubectl get/label/taint/cordon/apply/describe node` use, the way
a real API server does (field names, status codes, Status bodies, resourceVersion semantics):

- discovery: /version, /api, /api/v1, /apis, /apis/events.k8s.io/v1, /openapi/v2 (a document
  without definitions, in protobuf); no aggregated discovery, no /openapi/v3;
- nodes: create (the API server's `node.kubernetes.io/not-ready:NoSchedule` taint added),
  get, list (labelSelector, fieldSelector metadata.name / spec.unschedulable, limit and
  continue (410 when compacted), Table output for kubectl), watch (ADDED/MODIFIED/DELETED/
  BOOKMARK JSON lines, one-row Tables for `kubectl get -w`, resume from a resourceVersion,
  ERROR 410 Expired before the kept history), update (PUT, 409 on a stale resourceVersion),
  delete (DeleteOptions preconditions), and PATCH as apply-patch+yaml (server-side apply with
  managedFields ownership, conflicts and removals), merge-patch+json,
  strategic-merge-patch+json and json-patch+json; validation of names, labels, annotations
  and taints (422 Invalid with the API server's causes);
- events: core/v1 create/get/list (fieldSelector involvedObject.*, reason, type...) in the
  namespaces default, kube-system, kube-public, kube-node-lease; events.k8s.io/v1 create and
  list onto the same objects;
- pods and namespaces: read-only (no pods, the four namespaces), for `kubectl describe node`;
- nodes/status: get, update, patch (status writes keep spec and metadata; node writes keep
  status, as the node strategies reset them);
- authentication: client certificates issued by its CA (CN = user) and bearer tokens it issued
  (`issue_token`); `write_kubeconfig(path, user="cert"|"token")`; authorization by the RBAC
  rules a test grants a user (`grant(user, rules)`, 403 Forbidden as the RBAC authorizer).

It does NOT model: etcd or any persistence (state lives in memory and dies with the process);
controllers (no node lifecycle controller: no Ready condition, no unreachable or unschedulable
taints after a cordon, no event expiry);
other resources and API groups (pods and namespaces are read-only stand-ins); admission
webhooks, ValidatingAdmissionPolicy and every admission plugin except the not-ready taint on
node creation; authorization beyond the ClusterRole rules a test grants a user (no Roles,
bindings, resourceNames; ungranted users may do everything); protobuf request bodies;
aggregated discovery and OpenAPI schemas (unknown fields are found against a list of Node
fields, not a schema); consistent snapshots for paginated lists (a continue token lists the
current state after its last name); create-permission checks of an apply that creates;
generation, finalizers and graceful deletion; the watch cache's timing (bookmarks come every
`bookmark_interval`, a minute on a real server); priority and fairness, audit, rate limits;
HTTP/2 (HTTP/1.1 only). The strategic merge patch and server-side apply know the Node schema
only as far as `fieldsets` and `patches` describe it.

Test hooks: `faults.latency` (seconds added to every request), `faults.fail_next_write(node,
409)`, `go_down(abrupt=False)` / `come_up()` (connection refused meanwhile, state kept;
watches end cleanly, or are cut mid-stream when abrupt), `store.compact()`
(older resourceVersions become 410 Expired), `requests` (a Counter of requests by verb),
`resource_requests` (by verb and resource), `request_log` (the last 2,000 requests),
`issue_token(user)`, `grant(user, rules)`.
Run it alone with `python -m tests.kubefake --port P --kubeconfig FILE`.
"""

from .context import Faults
from .server import FakeApiServer
from .status import ApiError

__all__ = ["ApiError", "FakeApiServer", "Faults"]
