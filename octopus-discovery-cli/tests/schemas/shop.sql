-- A shop: what `octopus new --ddl` is tested with (PostgreSQL dialect).
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE customers (
    id BIGSERIAL PRIMARY KEY,
    email VARCHAR(255) NOT NULL UNIQUE,
    name TEXT NOT NULL,
    nickname TEXT DEFAULT 'anonymous',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    balance NUMERIC(12, 2) NOT NULL DEFAULT 0,
    birthday DATE,
    external_id UUID,
    prefs JSONB,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE products (
    sku VARCHAR(32) PRIMARY KEY,
    title TEXT NOT NULL,
    price NUMERIC(10, 2) NOT NULL,
    weight REAL,
    stock SMALLINT NOT NULL DEFAULT 0,
    photo BYTEA,
    released TIMESTAMP
);

CREATE TABLE order_lines (
    order_id BIGINT NOT NULL,
    line_no INTEGER NOT NULL,
    sku VARCHAR(32) NOT NULL REFERENCES products (sku),
    quantity INTEGER NOT NULL DEFAULT 1,
    note VARCHAR(80),
    PRIMARY KEY (order_id, line_no)
);
CREATE UNIQUE INDEX order_lines_order_sku ON order_lines (order_id, sku);
CREATE INDEX order_lines_sku ON order_lines (sku);

-- A table named like a Rust keyword, with a NULL-able column named `version`
-- (an ordinary column: only a NOT NULL integer `version` is the row's version).
CREATE TABLE "type" (
    code CHAR(3) PRIMARY KEY,
    label TEXT NOT NULL,
    version INTEGER
);

-- PostgreSQL types carried as their text form, and a column the database
-- computes (PostgreSQL 18's VIRTUAL: stored on older servers, virtual on SQLite).
CREATE TABLE films (
    id SERIAL PRIMARY KEY,
    title TEXT NOT NULL,
    length SMALLINT,
    features TEXT[],
    fulltext TSVECTOR NOT NULL,
    running INTERVAL,
    length_hours NUMERIC(4,2) GENERATED ALWAYS AS (round(length / 60.0, 2)) VIRTUAL
);
