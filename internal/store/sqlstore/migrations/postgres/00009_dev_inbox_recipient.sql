-- The development inbox is read per recipient (GET /v1/dev/messages?to=…); without this index
-- every read scanned the tenant's whole inbox.

-- +goose Up
CREATE INDEX dev_messages_recipient ON dev_messages (tenant_id, recipient, created_at);

-- +goose Down
DROP INDEX dev_messages_recipient;
