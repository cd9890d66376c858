-- +goose Up
-- A request interrupted by a crash can wait for an operator's !resume
-- instead of continuing by itself (procedure.resume: ask).
ALTER TABLE requests ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;

-- The restart plan of a request, one row per host, in order. The rows are
-- written when the request enters "restarting", so a resumed request walks
-- the same hosts; each host is marked "restarting" before it is touched and
-- "done" or "failed" after, so no completed host is restarted again.
CREATE TABLE host_steps (
    request_id  INTEGER NOT NULL REFERENCES requests (id),
    position    INTEGER NOT NULL,
    host        TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'restarting', 'done', 'failed')),
    started_at  TEXT    NOT NULL DEFAULT '',
    finished_at TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (request_id, position)
);

-- +goose Down
DROP TABLE host_steps;
ALTER TABLE requests DROP COLUMN parked;
