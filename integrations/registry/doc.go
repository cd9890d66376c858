// Package registry checks docker-registry instances (CNCF distribution, the
// software behind WMF's docker-registry-<instance>.service units) after a
// restart: are they healthy, and can they really write a blob and read it
// back?
//
// Health follows what WMF's own blackbox probes use. The debug listener
// (restricted: 5003, ml: 5005) serves /debug/health from distribution's
// health package: 200 with the body exactly `{}` when every registered check
// passes, 503 with a JSON object mapping each failing check (for example
// "storagedriver_s3", or a Redis address) to its error otherwise. The storage
// check stats the storage root every interval and turns unhealthy only after
// `threshold` consecutive failures (WMF: 10s × 3), so right after a restart
// `{}` proves little; WaitHealthy can demand several consecutive healthy
// answers. Health also asks the main port for `GET /v2/`, which answers 200
// `{}` with `Docker-Distribution-API-Version: registry/2.0` (401 behind an
// authenticating proxy; the expected status is configurable). While a check
// fails the main port answers everything with 503 UNAVAILABLE.
//
// The probe is the check that would have caught T422166 (image pushes failing
// with "blob upload unknown" after apus was repooled): it pushes a small
// random blob through the OCI distribution blob-push protocol and reads it
// back:
//
//	POST  /v2/<repo>/blobs/uploads/             → 202, Location: /v2/<repo>/blobs/uploads/<uuid>?_state=<token>
//	PATCH <location>  (Content-Range: 0-<n-1>)  → 202, Location (a new _state), Range: 0-<n-1>
//	PUT   <location>&digest=sha256:<hex>        → 201
//	HEAD  /v2/<repo>/blobs/<digest>             → 200, Content-Length, Docker-Content-Digest
//	GET   /v2/<repo>/blobs/<digest>             → 200, the same bytes
//	DELETE /v2/<repo>/blobs/<digest>            → 202 (405/UNSUPPORTED when deletion is off)
//
// The _state token is an HMAC (keyed by http.secret) over the repository,
// upload UUID, offset and start time; a token the instance cannot verify
// gives BLOB_UPLOAD_INVALID. A valid token whose upload the storage backend
// does not have (<root>/docker/registry/v2/repositories/<repo>/_uploads/<uuid>/startedat)
// gives 404 BLOB_UPLOAD_UNKNOWN: exactly what happens when successive
// requests of one push reach storage that has not seen the earlier writes,
// as with two asynchronously replicated apus datacenters. Upload state lives
// entirely in storage, so a plain restart of the registry process in the
// middle of a push does not break it.
//
// A probe on one instance cannot see hosts whose storage differs: after
// apus moved, hosts restarted at different times write to different apus
// datacenters, and each is consistent with itself. ProbeAcross also opens
// an upload on the probed instance and continues it (PATCH, PUT) on the
// same instance of every other host given, as a push through the load
// balancer does, then reads the blob there and through the balancer
// (Config.BalancerURL): a host on other storage answers 404
// BLOB_UPLOAD_UNKNOWN (or BLOB_UNKNOWN), and the error quotes the
// registry's answer as it came. An UNAVAILABLE answer is explained with
// the failing checks of that instance's /debug/health (for S3: the
// endpoint and the address the registry dialled, i.e. the apus site).
//
// Registry errors come as {"errors":[{"code":"...","message":"...","detail":...}]};
// ProbeResult.Code carries the registry's code when it is one of the codes
// distribution defines, or a small fixed set of codes of ours ("ok",
// "network", "timeout", "http_5xx", "blob_mismatch", ...), so it can label
// metrics and notices.
package registry
