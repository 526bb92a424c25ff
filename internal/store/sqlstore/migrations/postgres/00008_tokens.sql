-- One-time login tokens (Acronis), IdP login sessions, revoked OAuth access tokens, per-tenant
-- token settings (redirect allow-list, self-service access), the OpenIAM self-service host map,
-- per-application IAM introspection settings (Haventec), and the "one valid OTP per user and
-- purpose" slots. Keep it in step with migrations/sqlite/00008_tokens.sql.
--
-- Tokens and session ids are stored only as SHA-256 digests (they are 256-bit random values);
-- the IAM client secret only sealed.

-- +goose Up
CREATE TABLE one_time_tokens (
    hash           BYTEA PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    application_id TEXT NOT NULL DEFAULT '',
    purpose        TEXT NOT NULL,
    audit_data     TEXT NOT NULL DEFAULT '{}',
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX one_time_tokens_expiry ON one_time_tokens (expires_at);
CREATE INDEX one_time_tokens_user ON one_time_tokens (tenant_id, user_id);

CREATE TABLE login_sessions (
    hash       BYTEA PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX login_sessions_expiry ON login_sessions (expires_at);
CREATE INDEX login_sessions_user ON login_sessions (tenant_id, user_id);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    expires_at BIGINT NOT NULL, -- when the token would have expired anyway: purgeable after
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE token_settings (
    tenant_id                TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    redirect_targets         TEXT NOT NULL DEFAULT '[]', -- JSON array of URL prefixes
    self_service_require_key BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at               BIGINT NOT NULL
);

CREATE TABLE self_service_hosts (
    host      TEXT PRIMARY KEY, -- lower case, with the port when not the default
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);
CREATE INDEX self_service_hosts_tenant ON self_service_hosts (tenant_id);

CREATE TABLE application_iam (
    tenant_id         TEXT NOT NULL,
    application_id    TEXT PRIMARY KEY,
    enabled           BOOLEAN NOT NULL,
    introspection_url TEXT NOT NULL DEFAULT '',
    client_id         TEXT NOT NULL DEFAULT '',
    client_secret     BYTEA, -- sealed; NULL when not set
    role_path         TEXT NOT NULL DEFAULT '',
    allowed_role      TEXT NOT NULL DEFAULT '',
    updated_at        BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, application_id) REFERENCES applications (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE user_otps (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    expires_at   BIGINT NOT NULL, -- the slot is free from then on (0: released, the OTP was used)
    PRIMARY KEY (tenant_id, user_id, purpose),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE user_otps;
DROP TABLE application_iam;
DROP TABLE self_service_hosts;
DROP TABLE token_settings;
DROP TABLE revoked_tokens;
DROP TABLE login_sessions;
DROP TABLE one_time_tokens;
