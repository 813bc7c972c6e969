//! `caseledger-tools bench allocation`: ranking many staff members for one piece of work.
//!
//! The database `caseledger_bench_allocation` is recreated and the `staffing` read model's
//! tables are filled directly (not through commands: the benchmark is about reading and
//! ranking, and loading 10,000 staff members through the log would only time appends again)
//! with `staff` staff members (skills, homes around one city, weekday shifts, capacities,
//! preferences) and 1.5 allocations per staff member over 3,000 clients, a third of them
//! released. Then, for a different piece of work each iteration (required skills, slot,
//! location, client, kind), in each of `runs` runs:
//!
//! - **pure `rank`**: [`domain::allocation::rank`] over the candidates held in memory;
//! - **baseline: candidates query**: [`projections::staffing::candidates`] alone (every staff
//!   member with current workload and past clients, in one snapshot), what ranking reads when
//!   the read model has changed since the last ranking;
//! - **baseline: generation query**: [`projections::staffing::generation`] alone, what ranking
//!   reads when it has not;
//! - **full path, read model changed**: what `POST /allocations/rank` does between parsing and
//!   answering when its [`staffing::CandidateCache`] misses: the generation, the candidates,
//!   `rank`, and the names of the ranked candidates;
//! - **full path, read model unchanged**: the same with the cache hitting (the generation,
//!   `rank`, the names);
//! - **HTTP route**: `POST /allocations/rank` through the whole application in process (routing,
//!   authentication against the sessions table, permissions, JSON both ways), no socket, with
//!   the read model unchanged.
//!
//! Each scenario reports p50 and p99 of its iterations; the summary takes the median of the
//! runs.

use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sqlx::{PgPool, QueryBuilder};
use tower::ServiceExt;
use uuid::Uuid;

use domain::allocation::{self, Candidate, Weights, WorkItem};
use domain::staff::{GeoPoint, TimeSlot, Weekday};
use eventstore::EventStore;
use projections::staffing::{self, StaffingModel};
use projections::Projection;

use super::{fresh_database, median, ms, percentile};
use crate::rng::Rng;
use api::db::Database;
use api::AppState;

const DATABASE: &str = "caseledger_bench_allocation";

/// Clients the loaded allocations (and the ranked work) are for.
const CLIENTS: u64 = 3_000;

/// Settings of one benchmark invocation.
#[derive(Debug, Clone)]
pub struct AllocationBench {
    pub staff: usize,
    /// Iterations of each database scenario per run; the pure ranking runs ten times as many.
    pub iterations: usize,
    pub runs: usize,
    /// Candidates returned per ranking.
    pub limit: usize,
}

const SKILLS: [&str; 20] = [
    "wound care",
    "medication",
    "dementia care",
    "palliative care",
    "diabetes",
    "mobility",
    "personal care",
    "nutrition",
    "mental health",
    "physiotherapy",
    "occupational therapy",
    "speech therapy",
    "catheter care",
    "stoma care",
    "behaviour support",
    "transport",
    "domestic assistance",
    "respite",
    "injections",
    "assessment",
];

const KINDS: [&str; 4] = ["home visit", "clinic", "transport", "assessment"];

const WEEKDAYS: [Weekday; 5] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
];

/// Central Sydney, in micro-degrees; homes and work within about ±0.4 degrees (±45 km).
const CENTRE: (i32, i32) = (-33_868_800, 151_209_300);

fn point(rng: &mut Rng) -> anyhow::Result<GeoPoint> {
    let off = |rng: &mut Rng| rng.below(800_001) as i32 - 400_000;
    Ok(GeoPoint::new(CENTRE.0 + off(rng), CENTRE.1 + off(rng))?)
}

fn client(i: u64) -> Uuid {
    Uuid::from_u64_pair(0xC11E_0000, i)
}

fn pick<'a>(rng: &mut Rng, from: &[&'a str], n: u64) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for _ in 0..n {
        let s = from[rng.below(from.len() as u64) as usize];
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Fills `read_models.staff_members` and `read_models.work_allocations`.
async fn load(pool: &PgPool, staff: usize) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET search_path TO read_models")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(StaffingModel.create_sql())
        .execute(&mut *conn)
        .await
        .context("creating the staffing tables")?;
    let mut rng = Rng(2026);
    let mut ids = Vec::with_capacity(staff);
    let now = chrono::Utc::now();
    for chunk_start in (0..staff).step_by(500) {
        let mut rows = Vec::new();
        for i in chunk_start..(chunk_start + 500).min(staff) {
            let id = rng.uuid();
            ids.push(id);
            let n = 2 + rng.below(5);
            let skills = pick(&mut rng, &SKILLS, n);
            let home = point(&mut rng)?;
            let mut slots = Vec::new();
            for day in WEEKDAYS {
                if rng.below(10) < 7 {
                    let start = 360 + 60 * rng.below(7) as u16;
                    let end = (start + 240 + 60 * rng.below(6) as u16).min(1440);
                    slots.push(TimeSlot::new(day, start, end)?);
                }
            }
            let n = rng.below(3);
            let kinds = pick(&mut rng, &KINDS, n);
            let clients: Vec<Uuid> = (0..rng.below(3))
                .map(|_| client(rng.below(CLIENTS)))
                .collect();
            rows.push((
                id,
                format!("Staff Member {i:05}"),
                skills,
                home,
                3 + rng.below(10) as i32,
                slots,
                kinds,
                clients,
            ));
        }
        let mut insert = QueryBuilder::new(
            "INSERT INTO staff_members (staff_id, name, skills, home_lat_e6, home_lon_e6, \
             max_workload, availability, preferred_work_kinds, preferred_clients, registered_at, \
             updated_at, version) ",
        );
        insert.push_values(
            rows,
            |mut b, (id, name, skills, home, max, slots, kinds, clients)| {
                b.push_bind(id)
                    .push_bind(name)
                    .push_bind(skills)
                    .push_bind(home.lat_e6())
                    .push_bind(home.lon_e6())
                    .push_bind(max)
                    .push_bind(sqlx::types::Json(slots))
                    .push_bind(kinds)
                    .push_bind(clients)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(2_i64);
            },
        );
        insert.build().execute(&mut *conn).await?;
    }
    // 1.5 allocations per staff member, a third of them released.
    let n = staff * 3 / 2;
    let mut allocation_ids = Vec::with_capacity(n);
    let mut work_ids = Vec::with_capacity(n);
    let mut staff_ids = Vec::with_capacity(n);
    let mut client_ids = Vec::with_capacity(n);
    let mut active = Vec::with_capacity(n);
    for _ in 0..n {
        allocation_ids.push(rng.uuid());
        work_ids.push(rng.uuid());
        staff_ids.push(ids[rng.below(ids.len() as u64) as usize]);
        client_ids.push(client(rng.below(CLIENTS)));
        active.push(rng.below(3) != 0);
    }
    sqlx::query(
        "INSERT INTO work_allocations (allocation_id, allocation_no, work_kind, work_id, staff_id, \
             client_id, active, allocated_at, allocated_by, decision) \
         SELECT a, 1, 'case', w, s, c, act, now(), 'bench', '{}'::jsonb \
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::boolean[]) AS t(a, w, s, c, act)",
    )
    .bind(&allocation_ids)
    .bind(&work_ids)
    .bind(&staff_ids)
    .bind(&client_ids)
    .bind(&active)
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE staff_members; ANALYZE work_allocations")
        .execute(&mut *conn)
        .await
        .ok();
    conn.close().await?;
    Ok(())
}

/// A different piece of work per iteration.
fn works(count: usize) -> anyhow::Result<Vec<WorkItem>> {
    let mut rng = Rng(8);
    (0..count)
        .map(|_| {
            let n = 1 + rng.below(3);
            let skills = pick(&mut rng, &SKILLS, n);
            let day = WEEKDAYS[rng.below(5) as usize];
            let start = 480 + 30 * rng.below(14) as u16;
            let slot = TimeSlot::new(day, start, start + 60 + 30 * rng.below(4) as u16)?;
            Ok(WorkItem::new(
                skills,
                slot,
                point(&mut rng)?,
                client(rng.below(CLIENTS)),
                KINDS[rng.below(4) as usize],
            ))
        })
        .collect()
}

fn work_json(w: &WorkItem, limit: usize) -> serde_json::Value {
    serde_json::json!({
        "work": {
            "required_skills": w.required_skills,
            "slot": w.slot,
            "location": w.location,
            "client_id": w.client_id,
            "kind": w.kind,
        },
        "limit": limit,
    })
}

/// p50 and p99 of one scenario in one run, in ms.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    Latency {
        p50: ms(percentile(&samples, 0.50)),
        p99: ms(percentile(&samples, 0.99)),
    }
}

struct RunResult {
    pure: Latency,
    query: Latency,
    generation: Latency,
    cold: Latency,
    warm: Latency,
    http: Latency,
}

pub async fn run(db: &Database, opts: &AllocationBench) -> anyhow::Result<()> {
    anyhow::ensure!(opts.staff > 0, "--staff must be at least 1");
    anyhow::ensure!(opts.iterations > 0, "--iterations must be at least 1");
    let pool = fresh_database(db, DATABASE).await?;
    let result = bench(&pool, opts).await;
    pool.close().await;
    super::drop_database(db, DATABASE).await?;
    let results = result?;
    let summary = |name: &str, pick: fn(&RunResult) -> Latency| {
        let p50: Vec<f64> = results.iter().map(|r| pick(r).p50).collect();
        let p99: Vec<f64> = results.iter().map(|r| pick(r).p99).collect();
        println!(
            "| {name} | {:.3} | {:.3} | {} |",
            median(p50.clone()),
            median(p99.clone()),
            p50.iter()
                .zip(&p99)
                .map(|(a, b)| format!("{a:.3} / {b:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    println!(
        "\nranking {} staff for one piece of work (top {}), median of {} runs:\n",
        opts.staff,
        opts.limit,
        results.len()
    );
    println!("| scenario | p50 ms | p99 ms | per run (p50 / p99) |");
    println!("| --- | ---: | ---: | --- |");
    summary("pure `rank`, candidates in memory", |r| r.pure);
    summary("baseline: candidates query alone", |r| r.query);
    summary("baseline: generation query alone", |r| r.generation);
    summary(
        "full path, read model changed: generation + candidates + `rank` + names",
        |r| r.cold,
    );
    summary(
        "full path, read model unchanged: generation + `rank` + names",
        |r| r.warm,
    );
    summary(
        "HTTP `POST /allocations/rank`, in process, read model unchanged",
        |r| r.http,
    );
    Ok(())
}

async fn bench(pool: &PgPool, opts: &AllocationBench) -> anyhow::Result<Vec<RunResult>> {
    let started = Instant::now();
    load(pool, opts.staff).await?;
    println!(
        "loaded {} staff members and {} allocations in {:.1} s",
        opts.staff,
        opts.staff * 3 / 2,
        started.elapsed().as_secs_f64()
    );
    let weights = Weights::DEFAULT;
    let pure_iterations = opts.iterations * 10;
    let work = works(pure_iterations)?;
    // The pure scenario ranks the very candidates the read model gives.
    let (_, base): (_, Vec<Candidate>) = staffing::candidates(pool).await?;
    anyhow::ensure!(
        base.len() == opts.staff,
        "the candidates query found {} of {} staff",
        base.len(),
        opts.staff
    );

    // The application, as `serve` builds it, with a logged-in staff user.
    let state = AppState::new(
        EventStore::new(pool.clone()),
        std::sync::Arc::new(commands::SystemClock),
        &api::config::Config::default(),
    )?;
    const PASSWORD: &str = "Bench-passw0rd!";
    state
        .auth
        .register(
            "bench",
            "bench@example.org",
            domain::user::Role::Staff,
            PASSWORD,
            "bench",
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let session = state
        .auth
        .login("bench", PASSWORD, false, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = api::app(state.clone());

    let mut results = Vec::new();
    for run in 1..=opts.runs {
        // Pure ranking.
        let mut samples = Vec::with_capacity(pure_iterations);
        let mut checksum = 0usize;
        for w in &work {
            let t = Instant::now();
            let ranking = allocation::rank(w, &base, &weights, opts.limit);
            samples.push(t.elapsed());
            checksum += ranking.len();
        }
        anyhow::ensure!(checksum == pure_iterations * opts.limit.min(opts.staff));
        let pure = latency(samples);

        // Interleaved so that the database scenarios see the same conditions.
        let warm_cache = staffing::CandidateCache::default();
        let (mut q, mut g, mut cold, mut warm, mut h) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for w in work.iter().take(opts.iterations) {
            let t = Instant::now();
            let (_, candidates) = staffing::candidates(pool).await?;
            q.push(t.elapsed());
            anyhow::ensure!(candidates.len() == opts.staff);

            let t = Instant::now();
            staffing::generation(pool).await?;
            g.push(t.elapsed());

            for (cache, samples) in [
                (&staffing::CandidateCache::default(), &mut cold),
                (&warm_cache, &mut warm),
            ] {
                let t = Instant::now();
                let candidates = cache.candidates(pool).await?;
                let ranking = allocation::rank(w, &candidates, &weights, opts.limit);
                let ids: Vec<Uuid> = ranking.iter().map(|r| r.staff_id).collect();
                let names = staffing::names(pool, &ids).await?;
                samples.push(t.elapsed());
                anyhow::ensure!(names.len() == ranking.len());
            }

            let request = Request::post("/allocations/rank")
                .header(header::AUTHORIZATION, format!("Bearer {}", session.token))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&work_json(w, opts.limit))?))?;
            let t = Instant::now();
            let response = app.clone().oneshot(request).await?;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            h.push(t.elapsed());
            anyhow::ensure!(
                status == StatusCode::OK,
                "POST /allocations/rank answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let (hits, misses) = warm_cache.hits_and_misses();
        anyhow::ensure!(
            misses == 1 && hits as usize + 1 == opts.iterations,
            "the unchanged read model's cache missed {misses} times"
        );
        let r = RunResult {
            pure,
            query: latency(q),
            generation: latency(g),
            cold: latency(cold),
            warm: latency(warm),
            http: latency(h),
        };
        println!(
            "run {run} (p50 / p99 ms): pure rank {:.3} / {:.3}; candidates query {:.2} / {:.2}; \
             generation query {:.2} / {:.2}; full path changed {:.2} / {:.2}, \
             unchanged {:.2} / {:.2}; HTTP {:.2} / {:.2}",
            r.pure.p50,
            r.pure.p99,
            r.query.p50,
            r.query.p99,
            r.generation.p50,
            r.generation.p99,
            r.cold.p50,
            r.cold.p99,
            r.warm.p50,
            r.warm.p99,
            r.http.p50,
            r.http.p99
        );
        results.push(r);
    }
    Ok(results)
}
