-- +goose Up
-- Requests operators made, one row each. Times are RFC 3339 UTC text so the
-- file is readable with the sqlite3 shell during an incident.
CREATE TABLE requests (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    action           TEXT    NOT NULL CHECK (action IN ('depool', 'pool', 'restart')),
    service          TEXT    NOT NULL,
    datacenter       TEXT    NOT NULL DEFAULT '',
    reason           TEXT    NOT NULL,
    task             TEXT    NOT NULL DEFAULT '',
    operator         TEXT    NOT NULL,
    origin_network   TEXT    NOT NULL,
    origin_account   TEXT    NOT NULL DEFAULT '',
    origin_nick      TEXT    NOT NULL DEFAULT '',
    origin_channel   TEXT    NOT NULL DEFAULT '',
    state            TEXT    NOT NULL,
    step             TEXT    NOT NULL DEFAULT '',
    forced           INTEGER NOT NULL DEFAULT 0,
    forced_by        TEXT    NOT NULL DEFAULT '',
    force_reason     TEXT    NOT NULL DEFAULT '',
    confirmed_by     TEXT    NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancelled_by     TEXT    NOT NULL DEFAULT '',
    error            TEXT    NOT NULL DEFAULT '',
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    started_at       TEXT    NOT NULL DEFAULT '',
    finished_at      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX requests_state ON requests (state);
CREATE INDEX requests_service_state ON requests (service, state);

-- The audit trail: every change to a request, who made it and from where.
-- Rows are only ever inserted.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id     INTEGER REFERENCES requests (id),
    at             TEXT NOT NULL,
    actor          TEXT NOT NULL,
    origin_network TEXT NOT NULL DEFAULT '',
    origin_account TEXT NOT NULL DEFAULT '',
    origin_nick    TEXT NOT NULL DEFAULT '',
    origin_channel TEXT NOT NULL DEFAULT '',
    kind           TEXT NOT NULL,
    from_state     TEXT NOT NULL DEFAULT '',
    to_state       TEXT NOT NULL DEFAULT '',
    detail         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_request ON events (request_id, id);

-- Server Admin Log lines waiting to be sent, written in the same
-- transaction as the state change they report. The sender delivers them in
-- id order and sets sent_at only after the line was written to the chat
-- connection.
CREATE TABLE sal_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER REFERENCES requests (id),
    created_at TEXT    NOT NULL,
    line       TEXT    NOT NULL,
    sent_at    TEXT    NOT NULL DEFAULT '',
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sal_outbox_unsent ON sal_outbox (sent_at, id);

-- +goose Down
DROP TABLE sal_outbox;
DROP TABLE events;
DROP TABLE requests;
