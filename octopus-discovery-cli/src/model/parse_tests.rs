//! The parser on the spellings real dumps use.

use super::parse::parse;
use super::schema::{Auto, Default, Ty};
use super::Dialect;

#[test]
fn mysql_dump_spellings() {
    let ddl = "/*!40101 SET NAMES utf8 */;\n\
        DROP TABLE IF EXISTS `staff`;\n\
        CREATE TABLE `staff` (\n\
          `staff_id` tinyint unsigned NOT NULL AUTO_INCREMENT,\n\
          `email` varchar(50) DEFAULT NULL,\n\
          `active` tinyint(1) NOT NULL DEFAULT '1',\n\
          `password` VARCHAR(40) BINARY DEFAULT NULL,\n\
          `last_update` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,\n\
          PRIMARY KEY (`staff_id`),\n\
          UNIQUE KEY `idx_email` (`email`),\n\
          KEY `idx_active` (`active`)\n\
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n\
        INSERT INTO `staff` VALUES (1,'a',1,NULL,'2006-02-15 04:57:16');\n";
    let (schema, _) = parse("staff.sql", ddl, Dialect::Mysql).unwrap();
    let t = &schema.tables[0];
    assert_eq!(t.name, "staff");
    assert_eq!(t.primary_key, ["staff_id"]);
    assert_eq!(t.column("staff_id").auto, Auto::Identity);
    assert_eq!(t.column("active").ty, Ty::Bool);
    assert_eq!(t.column("active").default, Some(Default::Literal("TRUE".into())));
    assert_eq!(t.column("password").ty, Ty::Text(Some(40)));
    assert_eq!(t.column("last_update").auto, Auto::Updated);
    assert_eq!(t.column("last_update").ty, Ty::TimestampTz);
    assert_eq!(t.uniques().len(), 1);
    assert_eq!(t.indexes.len(), 2);
}

#[test]
fn pg_dump_spellings() {
    let ddl = "SET statement_timeout = 0;\n\
        CREATE TYPE public.mood AS ENUM ('sad', 'ok');\n\
        CREATE DOMAIN public.year AS integer CONSTRAINT year_check CHECK (VALUE >= 1901);\n\
        CREATE TABLE public.actor (\n\
            actor_id integer DEFAULT nextval('public.actor_actor_id_seq'::regclass) NOT NULL,\n\
            first_name character varying(45) NOT NULL,\n\
            mood public.mood DEFAULT 'ok'::public.mood,\n\
            born public.year,\n\
            last_update timestamp with time zone DEFAULT now() NOT NULL\n\
        );\n\
        ALTER TABLE public.actor OWNER TO postgres;\n\
        ALTER TABLE ONLY public.actor ADD CONSTRAINT actor_pkey PRIMARY KEY (actor_id);\n\
        CREATE UNIQUE INDEX actor_name ON public.actor USING btree (first_name);\n\
        CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;\n";
    let (schema, _) = parse("pagila.sql", ddl, Dialect::Postgres).unwrap();
    let t = &schema.tables[0];
    assert_eq!(t.primary_key, ["actor_id"]);
    assert_eq!(t.column("actor_id").auto, Auto::Identity);
    assert_eq!(t.column("first_name").ty, Ty::Text(Some(45)));
    assert_eq!(t.column("mood").ty, Ty::Text(None));
    assert_eq!(t.column("mood").default, Some(Default::Literal("'ok'".into())));
    assert_eq!(t.column("born").ty, Ty::I32);
    assert_eq!(t.column("last_update").auto, Auto::Updated);
    assert_eq!(t.uniques()[0].columns, ["first_name"]);
}

#[test]
fn errors_name_the_place_and_the_rule() {
    let err = parse(
        "s.sql",
        "CREATE TABLE t (\n  id INT PRIMARY KEY,\n  span MONEY\n);",
        Dialect::Postgres,
    )
    .unwrap_err();
    assert!(err.contains("s.sql:3: t.span: type `MONEY` cannot be mapped"), "{err}");
    // A column the parser cannot read is named, with its line.
    let err = parse(
        "s.sql",
        "CREATE TABLE t (\n  id INT PRIMARY KEY,\n  odd INT GENERATED SOMETIMES\n);",
        Dialect::Postgres,
    )
    .unwrap_err();
    assert!(
        err.starts_with("s.sql:3: t.odd: cannot read this column's definition"),
        "{err}"
    );
    let err = parse("s.sql", "CREATE TABLE t (a INT);", Dialect::Postgres).unwrap_err();
    assert!(err.contains("table `t` has no primary key"), "{err}");
    let err = parse("s.sql", "SELECT 1;", Dialect::Postgres).unwrap_err();
    assert!(err.contains("no CREATE TABLE"), "{err}");
}

#[test]
fn computed_columns_are_read_never_written() {
    // PostgreSQL 18 writes VIRTUAL (or nothing) after the expression; older ones STORED.
    let ddl = "CREATE TABLE public.film (\n\
            film_id integer PRIMARY KEY,\n\
            length smallint,\n\
            hours numeric(4,2) GENERATED ALWAYS AS (round(length / 60.0, 2)) VIRTUAL,\n\
            minutes integer GENERATED ALWAYS AS (length * 1),\n\
            seconds integer GENERATED ALWAYS AS (length * 60) STORED\n\
        );\n";
    let (schema, _) = parse("film.sql", ddl, Dialect::Postgres).unwrap();
    let t = &schema.tables[0];
    for name in ["hours", "minutes", "seconds"] {
        assert_eq!(t.column(name).auto, Auto::Computed, "{name}");
    }
    assert_eq!(t.column("hours").computed.as_deref(), Some("round(length / 60.0, 2)"));
    let written: Vec<&str> = t.writable().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(written, ["film_id", "length"]);
    let mysql = "CREATE TABLE p (id INT PRIMARY KEY, a INT, b INT AS (a + 1) VIRTUAL, c INT GENERATED ALWAYS AS (a * 2) STORED);";
    let (schema, _) = parse("p.sql", mysql, Dialect::Mysql).unwrap();
    assert_eq!(schema.tables[0].column("b").auto, Auto::Computed);
    assert_eq!(schema.tables[0].column("c").auto, Auto::Computed);
}

#[test]
fn postgres_only_types_are_carried_as_their_text() {
    let ddl = "CREATE TABLE film (\n\
            film_id integer PRIMARY KEY,\n\
            special_features text[],\n\
            fulltext tsvector NOT NULL,\n\
            span interval\n\
        );\n";
    let (schema, _) = parse("film.sql", ddl, Dialect::Postgres).unwrap();
    let t = &schema.tables[0];
    assert_eq!(t.column("special_features").ty, Ty::PgText("TEXT[]".into()));
    assert_eq!(t.column("fulltext").ty, Ty::PgText("TSVECTOR".into()));
    assert_eq!(t.column("span").ty, Ty::PgText("INTERVAL".into()));
    assert!(!t.column("fulltext").nullable);
}

#[test]
fn arrays_deeper_than_postgres_allows_are_refused_before_parsing() {
    let pg = Dialect::Postgres;
    let table = |dims: &str| format!("CREATE TABLE t (\n  id INT PRIMARY KEY,\n  x INT{dims}\n);");
    // sqlparser nests one type per `[]`: 200 000 of them once overflowed the stack.
    let err = parse("s.sql", &table(&"[]".repeat(200_000)), pg).unwrap_err();
    assert!(
        err.starts_with("s.sql:3: t.x: 200000 array dimensions"),
        "{}",
        &err[..err.len().min(300)]
    );
    let err = parse("s.sql", &table(&"[]".repeat(7)), pg).unwrap_err();
    assert!(
        err.starts_with("s.sql:3: t.x: 7 array dimensions, more than PostgreSQL's maximum of 6"),
        "{err}"
    );
    // Sizes and spaces between the brackets count the same.
    let err = parse("s.sql", &table("[3] [ ] [1][][] []\n  [2]"), pg).unwrap_err();
    assert!(err.starts_with("s.sql:3: t.x: 7 array dimensions"), "{err}");
    // On one line, in a quoted, schema-qualified table, and in ALTER TABLE … ADD COLUMN.
    let one_line = format!(
        "CREATE TABLE public.\"T\" (id INT PRIMARY KEY, y INT[] NOT NULL, x INT{});",
        "[]".repeat(7)
    );
    let err = parse("s.sql", &one_line, pg).unwrap_err();
    assert!(err.starts_with("s.sql:1: T.x: 7 array dimensions"), "{err}");
    let alter = format!(
        "CREATE TABLE t (id INT PRIMARY KEY);\nALTER TABLE ONLY t ADD COLUMN y INT, ADD COLUMN IF NOT EXISTS x INT{};",
        "[]".repeat(7)
    );
    let err = parse("s.sql", &alter, pg).unwrap_err();
    assert!(err.starts_with("s.sql:2: t.x: 7 array dimensions"), "{err}");
    // Elsewhere than in a column, the place is still named.
    let domain = format!(
        "CREATE DOMAIN d AS INT{};\nCREATE TABLE t (id INT PRIMARY KEY);",
        "[]".repeat(7)
    );
    let err = parse("s.sql", &domain, pg).unwrap_err();
    assert!(err.starts_with("s.sql:1: 7 array dimensions"), "{err}");
    // Up to 6 dimensions the columns read as before: one dimension is carried
    // as text, arrays of arrays are not mapped.
    let (schema, _) = parse("s.sql", &table("[]"), pg).unwrap();
    assert_eq!(schema.tables[0].column("x").ty, Ty::PgText("INTEGER[]".into()));
    for dims in [2, 6] {
        let err = parse("s.sql", &table(&"[]".repeat(dims)), pg).unwrap_err();
        assert!(err.starts_with("s.sql:3: t.x: type `INT[]"), "{err}");
        assert!(err.contains("cannot be mapped"), "{err}");
    }
}

#[test]
fn names_with_control_characters_are_refused() {
    let pg = Dialect::Postgres;
    // Names go into the generated code's comments: a newline in one would end
    // the comment and make the rest of the name code.
    let err = parse(
        "s.sql",
        "CREATE TABLE t (\n  id INT PRIMARY KEY,\n  \"a\nb\" INT\n);",
        pg,
    )
    .unwrap_err();
    assert_eq!(err, "s.sql:3: t.a\\nb: names must not contain control characters");
    let err = parse(
        "s.sql",
        "CREATE TABLE t (\n  id INT PRIMARY KEY,\n  \"x\npub fn pwned() {} //\" INT\n);",
        pg,
    )
    .unwrap_err();
    assert!(
        err.starts_with("s.sql:3: t.x\\npub fn pwned() {} //: names must not"),
        "{err}"
    );
    let err = parse("s.sql", "\nCREATE TABLE \"t\tab\" (id INT PRIMARY KEY);", pg).unwrap_err();
    assert_eq!(err, "s.sql:2: t\\tab: names must not contain control characters");
    let err = parse("s.sql", "CREATE TABLE `t\r` (id INT PRIMARY KEY);", Dialect::Mysql).unwrap_err();
    assert_eq!(err, "s.sql:1: t\\r: names must not contain control characters");
    // An index's name is written into a doc comment as well.
    let err = parse(
        "s.sql",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT);\nCREATE UNIQUE INDEX \"i\u{7}\" ON t (a);",
        pg,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "s.sql:2: t: index `i\\u{7}`: names must not contain control characters"
    );
    let err = parse(
        "s.sql",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, CONSTRAINT \"k\n\" UNIQUE (a));",
        pg,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "s.sql:1: t: index `k\\n`: names must not contain control characters"
    );
    let err = parse(
        "s.sql",
        "CREATE TABLE t (id INT PRIMARY KEY);\nALTER TABLE t ADD COLUMN \"b\n\" INT;",
        pg,
    )
    .unwrap_err();
    assert_eq!(err, "s.sql:2: t.b\\n: names must not contain control characters");
    // Other characters stay allowed.
    let (schema, _) = parse("s.sql", "CREATE TABLE \"Ünïcode t\" (\"id é\" INT PRIMARY KEY);", pg).unwrap();
    assert_eq!(schema.tables[0].columns[0].name, "id é");
}
