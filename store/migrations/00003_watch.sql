-- +goose Up
-- The periodic registry probe of the watch: the latest result per registry
-- instance, with how many probes in a row have failed and whether the
-- channel was told. "notified" survives a restart of poolbot, so a failure
-- is announced once and its recovery once, whenever poolbot restarts.
CREATE TABLE probe_results (
    service              TEXT    NOT NULL,
    host                 TEXT    NOT NULL,
    instance             TEXT    NOT NULL,
    at                   TEXT    NOT NULL,
    ok                   INTEGER NOT NULL,
    code                 TEXT    NOT NULL,
    step                 TEXT    NOT NULL DEFAULT '',
    status               INTEGER NOT NULL DEFAULT 0,
    error                TEXT    NOT NULL DEFAULT '',
    duration_ms          INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since        TEXT    NOT NULL DEFAULT '',
    last_ok_at           TEXT    NOT NULL DEFAULT '',
    notified             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service, host, instance)
);

-- Pooled-state changes of a managed service made outside poolbot, as the
-- drift watch saw them, and what it did about each: the restart request it
-- queued or joined (request_id), or a proposal (mode 'propose').
CREATE TABLE drifts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    service     TEXT    NOT NULL,
    datacenter  TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    pooled_from INTEGER NOT NULL,
    pooled_to   INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    changes     INTEGER NOT NULL DEFAULT 1,
    who         TEXT    NOT NULL DEFAULT '',
    mode        TEXT    NOT NULL,
    request_id  INTEGER REFERENCES requests (id),
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX drifts_service ON drifts (service, id);

-- +goose Down
DROP TABLE drifts;
DROP TABLE probe_results;
