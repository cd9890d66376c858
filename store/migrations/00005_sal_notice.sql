-- +goose Up
-- What a SAL line records, as data (a poolbot.Notice in JSON): its request,
-- the state and host progress it reports. The Slack mirror reads it
-- instead of parsing the line. Empty for lines queued before this column,
-- and for lines queued as text.
ALTER TABLE sal_outbox ADD COLUMN notice TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE sal_outbox DROP COLUMN notice;
