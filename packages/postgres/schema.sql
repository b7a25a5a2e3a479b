-- @idem/postgres: the table of idempotency records. Safe to run again (IF NOT EXISTS).
-- For another table or schema name: migrationSql({ table, schema }) from @idem/postgres.
CREATE TABLE IF NOT EXISTS "idem_records" (
  key              text COLLATE "C" PRIMARY KEY,
  state            text NOT NULL CHECK (state IN ('in_flight', 'completed', 'failed')),
  fingerprint      text NOT NULL,
  token            text NOT NULL,
  lease_expires_at timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL,
  status           integer,
  headers          jsonb,
  body             bytea,
  omitted          text CHECK (omitted IN ('too_large', 'streaming')),
  CHECK ((state = 'completed') = (status IS NOT NULL AND headers IS NOT NULL AND body IS NOT NULL))
);

-- The sweeper deletes expired rows oldest first, in small batches.
CREATE INDEX IF NOT EXISTS "idem_records_expires_at_idx" ON "idem_records" (expires_at);
