-- Delivery: what the outbox dispatcher and providers' status callbacks
-- record, the tenant's provider accounts, and its message templates.
--
-- attempt_started is set (unix microseconds) just before a send and cleared
-- when its outcome is recorded: a claim that finds it set knows an earlier
-- attempt may have reached the provider. claim_until doubles as the time
-- before which a deferred delivery (retry backoff, quiet hours) is not
-- claimed. The *_at columns are 0 until the status they name is reported.
ALTER TABLE deliveries ADD COLUMN error_code TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN attempt_started BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN sent_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN delivered_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN opened_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN clicked_at BIGINT NOT NULL DEFAULT 0;
-- The version of the template a delivery was rendered from, 0 for none.
ALTER TABLE deliveries ADD COLUMN template_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_message ON deliveries (tenant_id, provider, provider_message_id) WHERE provider_message_id <> '';
CREATE INDEX deliveries_journey ON deliveries (tenant_id, journey_id, id);
CREATE INDEX deliveries_customer ON deliveries (tenant_id, customer_id, id);

-- Each status a provider reported, once per (delivery, type, provider event).
CREATE TABLE delivery_events (
	tenant_id   TEXT COLLATE "C" NOT NULL,
	delivery_id TEXT COLLATE "C" NOT NULL,
	type        TEXT NOT NULL,
	event_id    TEXT NOT NULL,
	reason      TEXT NOT NULL,
	at          BIGINT NOT NULL,
	received_at BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, delivery_id, type, event_id),
	FOREIGN KEY (tenant_id, delivery_id) REFERENCES deliveries (tenant_id, id)
);

-- A provider account. secrets is the AES-256-GCM sealed JSON object of the
-- credential fields; settings holds the rest.
CREATE TABLE providers (
	tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id          TEXT COLLATE "C" NOT NULL,
	name        TEXT NOT NULL,
	kind        TEXT NOT NULL,
	default_for JSONB NOT NULL,
	settings    JSONB NOT NULL,
	secrets     TEXT NOT NULL,
	rate        DOUBLE PRECISION NOT NULL,
	burst       INTEGER NOT NULL,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name)
);

-- Every version of every template; a version never changes.
CREATE TABLE templates (
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id         TEXT COLLATE "C" NOT NULL,
	version    INTEGER NOT NULL,
	name       TEXT NOT NULL,
	channel    TEXT NOT NULL,
	content    JSONB NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, id, version)
);
