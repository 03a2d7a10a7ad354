-- Journey migrations (issue #6): instances a migration holds, and the
-- record of each change of a journey's active version.
--
-- Instance status held. SQLite cannot alter a CHECK, and rebuilding
-- instances would fight the foreign keys of steps, timers, waits and
-- deliveries, so the CHECK is edited in the schema text, as SQLite's ALTER
-- TABLE documentation allows for a constraint that only accepts more rows
-- ("making other kinds of table schema changes"). The migration runner
-- then increments schema_version in this transaction (Dialect.AfterMigration
-- in store/sqlite), which makes every connection, this one included,
-- reload the schema.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, '''paused'', ''completed''', '''paused'', ''held'', ''completed''')
	WHERE type = 'table' AND name = 'instances';
PRAGMA writable_schema = OFF;

-- One row per migration, kept after the journey is deleted (no foreign
-- key to journeys, as for instances). batch is a JSON array of instance
-- ids, failures a JSON array of {instance_id, error}.
CREATE TABLE migrations (
	tenant_id       TEXT NOT NULL REFERENCES tenants (id),
	id              TEXT NOT NULL,
	journey_id      TEXT NOT NULL,
	kind            TEXT NOT NULL CHECK (kind IN ('publish', 'rollback')),
	from_version    INTEGER NOT NULL,
	to_version      INTEGER NOT NULL,
	strategy        TEXT NOT NULL CHECK (strategy IN ('new_entries_only', 'migrate_all', 'gradual')),
	rollout_percent INTEGER NOT NULL,
	batch_size      INTEGER NOT NULL,
	options         TEXT NOT NULL CHECK (json_valid(options)),
	status          TEXT NOT NULL CHECK (status IN ('running', 'paused', 'partial', 'completed', 'aborted', 'failed')),
	created_by      TEXT NOT NULL,
	total           INTEGER NOT NULL,
	migrated        INTEGER NOT NULL,
	exited          INTEGER NOT NULL,
	held            INTEGER NOT NULL,
	failed          INTEGER NOT NULL,
	skipped         INTEGER NOT NULL,
	cursor          TEXT NOT NULL,
	batch           TEXT NOT NULL CHECK (json_valid(batch)),
	failures        TEXT NOT NULL CHECK (json_valid(failures)),
	error           TEXT NOT NULL,
	created_at      BIGINT NOT NULL,
	updated_at      BIGINT NOT NULL,
	finished_at     BIGINT,
	PRIMARY KEY (tenant_id, id)
);
-- A journey has at most one unfinished migration, also when two start at once.
CREATE UNIQUE INDEX migrations_unfinished ON migrations (tenant_id, journey_id)
	WHERE status IN ('running', 'paused', 'partial');
CREATE INDEX migrations_journey ON migrations (tenant_id, journey_id, id);
CREATE INDEX migrations_running ON migrations (updated_at, tenant_id, id) WHERE status = 'running';

-- The instances of a journey version a migration moves, in id order
-- (Instances.ActiveKeys): a page is a range of the index, where
-- instances_journey would have every active instance of the journey read
-- and sorted. It leaves out ended instances, and covers the query (SQLite
-- needs status in it for that).
CREATE INDEX instances_version_active ON instances (tenant_id, journey_id, version, id, customer_id, status)
	WHERE status NOT IN ('completed', 'failed', 'exited');
