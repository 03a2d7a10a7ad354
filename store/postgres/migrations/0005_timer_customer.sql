-- Timers name their instance's customer, so the timer service can address
-- the instance's grain, which lives with its customer's grain in a cluster.
ALTER TABLE timers ADD COLUMN customer_id TEXT NOT NULL DEFAULT '';
UPDATE timers SET customer_id = (
	SELECT i.customer_id FROM instances i WHERE i.tenant_id = timers.tenant_id AND i.id = timers.instance_id);
