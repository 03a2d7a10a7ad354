-- Journey migrations (issue #6): instances a migration holds, and the
-- record of each change of a journey's active version.
--
-- Instance status held. The CHECK only accepts more rows than before.
ALTER TABLE instances DROP CONSTRAINT instances_status_check;
ALTER TABLE instances ADD CONSTRAINT instances_status_check
	CHECK (status IN ('running', 'waiting', 'paused', 'held', 'completed', 'failed', 'exited'));

-- One row per migration, kept after the journey is deleted (no foreign
-- key to journeys, as for instances). batch is a JSON array of instance
-- ids, failures a JSON array of {instance_id, error}.
CREATE TABLE migrations (
	tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id              TEXT COLLATE "C" NOT NULL,
	journey_id      TEXT COLLATE "C" NOT NULL,
	kind            TEXT NOT NULL CHECK (kind IN ('publish', 'rollback')),
	from_version    INTEGER NOT NULL,
	to_version      INTEGER NOT NULL,
	strategy        TEXT NOT NULL CHECK (strategy IN ('new_entries_only', 'migrate_all', 'gradual')),
	rollout_percent INTEGER NOT NULL,
	batch_size      INTEGER NOT NULL,
	options         JSONB NOT NULL,
	status          TEXT NOT NULL CHECK (status IN ('running', 'paused', 'partial', 'completed', 'aborted', 'failed')),
	created_by      TEXT NOT NULL,
	total           INTEGER NOT NULL,
	migrated        INTEGER NOT NULL,
	exited          INTEGER NOT NULL,
	held            INTEGER NOT NULL,
	failed          INTEGER NOT NULL,
	skipped         INTEGER NOT NULL,
	cursor          TEXT COLLATE "C" NOT NULL,
	batch           JSONB NOT NULL,
	failures        JSONB NOT NULL,
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
