-- +goose Up
-- The DNS step of a request (state "dns"): the record's TTL before the
-- conftool change and the moment every authoritative server answered the
-- new state. The cache wait counts from that moment, so a poolbot
-- restarted during the wait resumes it with the time left instead of
-- starting it again or skipping it.
CREATE TABLE dns_steps (
    request_id   INTEGER PRIMARY KEY REFERENCES requests (id),
    old_ttl_ms   INTEGER NOT NULL DEFAULT 0,
    converged_at TEXT    NOT NULL DEFAULT '',
    moved        TEXT    NOT NULL DEFAULT '',
    flushed      INTEGER NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE dns_steps;
