//! The generated model's CRUD path against hand-written sqlx running the same
//! statements, on the database at the URL given (SQLite or PostgreSQL).
//! Copied into a project generated from tests/schemas/shop.sql and run by
//! `cargo test -p octopus-discovery-cli --test model -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use shop::model::products_gen::{NewProducts, Products, ProductsKey, ProductsModel};
use shop::model::Db;

const INSERT: [&str; 2] = [
    "INSERT INTO \"products\" (\"sku\", \"title\", \"price\", \"weight\", \"stock\", \"photo\", \"released\") VALUES ($1, $2, $3, $4, COALESCE($5, 0), $6, $7) RETURNING \"sku\", \"title\", CAST(\"price\" AS TEXT) AS \"price\", \"weight\", \"stock\", \"photo\", \"released\"",
    "INSERT INTO \"products\" (\"sku\", \"title\", \"price\", \"weight\", \"stock\", \"photo\", \"released\") VALUES ($1, $2, CAST($3 AS NUMERIC), $4, COALESCE($5, 0), $6, $7) RETURNING \"sku\", \"title\", CAST(\"price\" AS TEXT) AS \"price\", \"weight\", \"stock\", \"photo\", \"released\"",
];
const FIND: &str = "SELECT \"sku\", \"title\", CAST(\"price\" AS TEXT) AS \"price\", \"weight\", \"stock\", \"photo\", \"released\" FROM \"products\" WHERE \"sku\" = $1";
const UPDATE: [&str; 2] = [
    "UPDATE \"products\" SET \"title\" = $1, \"price\" = $2, \"weight\" = $3, \"stock\" = $4, \"photo\" = $5, \"released\" = $6 WHERE \"sku\" = $7 RETURNING \"sku\", \"title\", CAST(\"price\" AS TEXT) AS \"price\", \"weight\", \"stock\", \"photo\", \"released\"",
    "UPDATE \"products\" SET \"title\" = $1, \"price\" = CAST($2 AS NUMERIC), \"weight\" = $3, \"stock\" = $4, \"photo\" = $5, \"released\" = $6 WHERE \"sku\" = $7 RETURNING \"sku\", \"title\", CAST(\"price\" AS TEXT) AS \"price\", \"weight\", \"stock\", \"photo\", \"released\"",
];

/// The hand-written row: the same columns, its own FromRow.
#[derive(Debug, sqlx::FromRow)]
#[allow(dead_code)]
struct Row {
    sku: String,
    title: String,
    price: String,
    weight: Option<f32>,
    stock: i16,
    photo: Option<Vec<u8>>,
    released: Option<chrono::NaiveDateTime>,
}

fn new(tag: &str, i: usize) -> NewProducts {
    NewProducts {
        sku: format!("{tag}-{i}"),
        title: format!("title {i}"),
        price: format!("{}.25", i % 1000),
        weight: Some(1.5),
        stock: Some((i % 100) as i16),
        photo: None,
        released: None,
    }
}

async fn generated(db: &Db, tag: &str, n: usize) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let row = ProductsModel::insert(db, &new(tag, i)).await.unwrap();
        let mut found: Products = ProductsModel::find_one(db, &ProductsKey { sku: row.sku.clone() }).await.unwrap();
        found.title.push('!');
        ProductsModel::update(db, &found).await.unwrap();
    }
    start.elapsed()
}

macro_rules! hand_written {
    ($pool:expr, $d:expr, $tag:expr, $n:expr) => {{
        let start = Instant::now();
        for i in 0..$n {
            let p = new($tag, i);
            let row: Row = sqlx::query_as(INSERT[$d])
                .bind(&p.sku)
                .bind(&p.title)
                .bind(&p.price)
                .bind(p.weight)
                .bind(p.stock)
                .bind(&p.photo)
                .bind(p.released)
                .fetch_one($pool)
                .await
                .unwrap();
            let mut found: Row = sqlx::query_as(FIND).bind(&row.sku).fetch_one($pool).await.unwrap();
            found.title.push('!');
            let _: Row = sqlx::query_as(UPDATE[$d])
                .bind(&found.title)
                .bind(&found.price)
                .bind(found.weight)
                .bind(found.stock)
                .bind(&found.photo)
                .bind(found.released)
                .bind(&found.sku)
                .fetch_one($pool)
                .await
                .unwrap();
        }
        start.elapsed()
    }};
}

async fn hand(db: &Db, tag: &str, n: usize) -> Duration {
    match db {
        Db::Sqlite(pool) => hand_written!(pool, 0, tag, n),
        Db::Postgres(pool) => hand_written!(pool, 1, tag, n),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).expect("a database URL");
    let n: usize = std::env::args().nth(2).map_or(500, |s| s.parse().unwrap());
    let rounds: usize = std::env::args().nth(3).map_or(9, |s| s.parse().unwrap());
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    // Warm-up: connections open, statements prepared.
    generated(&db, "warm-g", 50).await;
    hand(&db, "warm-h", 50).await;
    let (mut g, mut h, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always meets a warmer cache;
        // each round's ratio compares two runs seconds apart, on the same noise.
        let (gd, hd) = if round % 2 == 0 {
            let gd = generated(&db, &format!("g{round}"), n).await;
            (gd, hand(&db, &format!("h{round}"), n).await)
        } else {
            let hd = hand(&db, &format!("h{round}"), n).await;
            (generated(&db, &format!("g{round}"), n).await, hd)
        };
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        g.push(per(gd));
        h.push(per(hd));
        ratios.push(gd.as_secs_f64() / hd.as_secs_f64());
    }
    let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "{}: insert+find+update, {n} rows x {rounds} rounds: generated {:.1} us/row, hand-written {:.1} us/row (medians); ratio per round: median {:.3}, min {lo:.3}, max {hi:.3}",
        if url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" },
        median(g),
        median(h),
        median(ratios),
    );
}
