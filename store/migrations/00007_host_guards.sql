-- +goose Up
-- What a host step changed outside the host before restarting it, stored
-- before the change so that a crash mid-host undoes it correctly:
-- drained: JSON list of the load-balancer node objects depooled, each with
-- the pooled value to restore on success ([{"dc","cluster","service","pooled"}]);
-- silences: JSON list of the Alertmanager silences created for the restart
-- ([{"id","ends_at"}]), removed after it (or reported with their expiry).
ALTER TABLE host_steps ADD COLUMN drained TEXT NOT NULL DEFAULT '';
ALTER TABLE host_steps ADD COLUMN silences TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE host_steps DROP COLUMN silences;
ALTER TABLE host_steps DROP COLUMN drained;
