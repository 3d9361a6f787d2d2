-- Cache tokens (counted apart by the providers, priced apart) and the cost of each call, in US
-- dollars from hive.toml's [prices]; NULL when the model has no price.
ALTER TABLE model_calls ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE model_calls ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE model_calls ADD COLUMN cost_usd REAL;
