-- Delivery providers configured through the API (a tenant's own generic HTTP, Twilio-compatible
-- or SMPP gateways; deployment-wide ones live in the configuration file), the (channel, role)
-- slots that make "one primary and one secondary per channel" a unique key, receipts that arrived
-- before their message was known, the sender of a fallback message, and the lookup of a message
-- by its provider's message id (delivery receipts).

-- +goose Up
CREATE TABLE providers (
    id         TEXT NOT NULL PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    type       TEXT NOT NULL,
    channels   TEXT NOT NULL, -- comma-separated
    role       TEXT NOT NULL CHECK (role IN ('primary', 'secondary')),
    settings   TEXT NOT NULL DEFAULT '{}',
    secrets    BYTEA, -- sealed JSON object; NULL when there are none
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX providers_name ON providers (tenant_id, name);

CREATE TABLE provider_routes (
    tenant_id   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    role        TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, channel, role),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES providers (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX provider_routes_provider ON provider_routes (provider_id);

CREATE TABLE parked_receipts (
    provider            TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    tenant_id           TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL,
    error               TEXT NOT NULL DEFAULT '',
    at                  BIGINT NOT NULL
);
CREATE INDEX parked_receipts_key ON parked_receipts (provider, provider_message_id);
CREATE INDEX parked_receipts_at ON parked_receipts (at);

ALTER TABLE messages ADD COLUMN fallback_sender TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_provider_id ON messages (provider, provider_message_id) WHERE provider_message_id <> '';

-- +goose Down
DROP INDEX messages_provider_id;
ALTER TABLE messages DROP COLUMN fallback_sender;
DROP TABLE parked_receipts;
DROP TABLE provider_routes;
DROP TABLE providers;
