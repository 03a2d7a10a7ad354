-- Leases on the rows the background services claim (timers to fire,
-- deliveries to send, events to route), so that the nodes of a cluster
-- sharing the database handle each row one at a time: a row claimed is the
-- claimant's until claim_until (unix microseconds) and free again once that
-- has passed, also when the claimant died. 0 was never claimed. The indexes
-- timers_due, deliveries_pending and events_unrouted still give the claims
-- their order; the few rows leased at a time are filtered out on the way.
ALTER TABLE timers ADD COLUMN claim_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN claim_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN claim_until BIGINT NOT NULL DEFAULT 0;
