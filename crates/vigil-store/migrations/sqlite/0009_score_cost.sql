-- What producing a score cost (an LLM judge's call), in USD.
ALTER TABLE scores ADD COLUMN cost_usd REAL;
