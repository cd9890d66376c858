-- +goose Up
-- One row that /healthz rewrites on every check (store.Ping): a real write
-- to the database file, committed, so a read-only file, a full disk or a
-- broken WAL makes the check fail instead of only taking a lock.
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT    NOT NULL
);

-- +goose Down
DROP TABLE heartbeat;
