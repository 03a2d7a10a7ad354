CREATE TABLE tenants (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
	id           TEXT PRIMARY KEY,
	tenant_id    TEXT NOT NULL REFERENCES tenants (id),
	name         TEXT NOT NULL,
	prefix       TEXT NOT NULL,
	key_hash     TEXT NOT NULL UNIQUE,
	created_at   BIGINT NOT NULL,
	revoked_at   BIGINT,
	last_used_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE journeys (
	tenant_id      TEXT NOT NULL REFERENCES tenants (id),
	id             TEXT NOT NULL,
	name           TEXT NOT NULL,
	description    TEXT NOT NULL,
	status         TEXT NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'archived')),
	active_version INTEGER NOT NULL,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
CREATE INDEX journeys_status ON journeys (tenant_id, status, id);

CREATE TABLE journey_versions (
	journey_id   TEXT NOT NULL,
	number       INTEGER NOT NULL,
	tenant_id    TEXT NOT NULL,
	status       TEXT NOT NULL CHECK (status IN ('draft', 'published')),
	graph        TEXT NOT NULL CHECK (json_valid(graph)),
	created_at   BIGINT NOT NULL,
	updated_at   BIGINT NOT NULL,
	published_at BIGINT,
	PRIMARY KEY (journey_id, number),
	FOREIGN KEY (tenant_id, journey_id) REFERENCES journeys (tenant_id, id) ON DELETE CASCADE
);
