-- Customers, events, instances and what their steps commit. Instances have
-- no foreign key to journeys: a journey's history must not block deleting
-- it, nor vanish with it.
ALTER TABLE tenants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings));

CREATE TABLE customers (
	tenant_id   TEXT NOT NULL REFERENCES tenants (id),
	id          TEXT NOT NULL,
	external_id TEXT NOT NULL,
	email       TEXT NOT NULL,
	phone       TEXT NOT NULL,
	name        TEXT NOT NULL,
	timezone    TEXT NOT NULL,
	properties  TEXT NOT NULL CHECK (json_valid(properties)),
	tags        TEXT NOT NULL CHECK (json_valid(tags)),
	preferences TEXT NOT NULL CHECK (json_valid(preferences)),
	push_tokens TEXT NOT NULL CHECK (json_valid(push_tokens)),
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, external_id)
);

CREATE TABLE events (
	tenant_id   TEXT NOT NULL,
	id          TEXT NOT NULL,
	customer_id TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	type        TEXT NOT NULL,
	properties  TEXT NOT NULL CHECK (json_valid(properties)),
	occurred_at BIGINT NOT NULL,
	received_at BIGINT NOT NULL,
	routed_at   BIGINT,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, message_id),
	FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX events_unrouted ON events (received_at, id) WHERE routed_at IS NULL;
CREATE INDEX events_customer ON events (tenant_id, customer_id, occurred_at);

CREATE TABLE instances (
	tenant_id   TEXT NOT NULL,
	id          TEXT NOT NULL,
	journey_id  TEXT NOT NULL,
	version     INTEGER NOT NULL,
	customer_id TEXT NOT NULL,
	status      TEXT NOT NULL CHECK (status IN ('running', 'waiting', 'paused', 'completed', 'failed', 'exited')),
	nodes       TEXT NOT NULL CHECK (json_valid(nodes)),
	entry_key   TEXT NOT NULL,
	snapshot    TEXT CHECK (json_valid(snapshot)),
	epoch       BIGINT NOT NULL,
	error       TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL,
	ended_at    BIGINT,
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE UNIQUE INDEX instances_one_active ON instances (tenant_id, journey_id, customer_id)
	WHERE status NOT IN ('completed', 'failed', 'exited');
CREATE UNIQUE INDEX instances_entry_key ON instances (tenant_id, journey_id, entry_key) WHERE entry_key <> '';
CREATE INDEX instances_customer ON instances (tenant_id, customer_id, journey_id, created_at);
CREATE INDEX instances_journey ON instances (tenant_id, journey_id, status, id);
CREATE INDEX instances_running ON instances (id) WHERE status = 'running';

CREATE TABLE instance_steps (
	tenant_id   TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	seq         BIGINT NOT NULL,
	node_id     TEXT NOT NULL,
	node_type   TEXT NOT NULL,
	version     INTEGER NOT NULL,
	token_id    TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	branch      TEXT NOT NULL,
	input       TEXT CHECK (json_valid(input)),
	output      TEXT CHECK (json_valid(output)),
	error       TEXT NOT NULL,
	started_at  BIGINT NOT NULL,
	finished_at BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, instance_id, seq),
	FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, id)
);

CREATE TABLE timers (
	tenant_id   TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	token_id    TEXT NOT NULL,
	due_at      BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, instance_id, token_id),
	FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, id)
);
CREATE INDEX timers_due ON timers (due_at);

CREATE TABLE waits (
	tenant_id   TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	customer_id TEXT NOT NULL,
	event_type  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, instance_id, customer_id, event_type),
	FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, id)
);
CREATE INDEX waits_event ON waits (tenant_id, customer_id, event_type);

CREATE TABLE deliveries (
	tenant_id           TEXT NOT NULL,
	id                  TEXT NOT NULL,
	key                 TEXT NOT NULL,
	journey_id          TEXT NOT NULL,
	instance_id         TEXT NOT NULL,
	customer_id         TEXT NOT NULL,
	node_id             TEXT NOT NULL,
	channel             TEXT NOT NULL,
	payload             TEXT NOT NULL CHECK (json_valid(payload)),
	status              TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'delivered', 'bounced', 'failed', 'skipped')),
	provider            TEXT NOT NULL,
	provider_message_id TEXT NOT NULL,
	error               TEXT NOT NULL,
	attempts            INTEGER NOT NULL,
	created_at          BIGINT NOT NULL,
	updated_at          BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, key),
	FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, id)
);
CREATE INDEX deliveries_pending ON deliveries (created_at, id) WHERE status = 'pending';
CREATE INDEX deliveries_sends ON deliveries (tenant_id, customer_id, channel, created_at);
CREATE INDEX deliveries_instance ON deliveries (tenant_id, instance_id, id);
