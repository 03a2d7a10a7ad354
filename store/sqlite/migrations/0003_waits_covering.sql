-- WaitingFor looks up a customer's waits for an event type on every event
-- routed. With the instance id in the index the lookup is covered and
-- ordered; without it SQLite's planner preferred the primary key, which it
-- could match on the tenant alone, and scanned all of the tenant's waits.
DROP INDEX waits_event;
CREATE INDEX waits_event ON waits (tenant_id, customer_id, event_type, instance_id);
