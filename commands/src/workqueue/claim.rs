//! Claim-next: the one pick across all of a user's queues, with `FOR UPDATE SKIP LOCKED`.

use super::*;

/// Claim-next's pick: see [`WorkQueues::claim_next`]. $1 the user, $2 now, $3 the queues to
/// limit the pick to (or NULL). One row per event of the picked task (one with NULL event
/// columns if it has none, which only a damaged store can show), none if nothing was picked.
pub(super) static CLAIM_NEXT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH eligible AS ( \
             SELECT g.queue_id, \
                    coalesce(array_agg(DISTINCT s) FILTER (WHERE s IS NOT NULL), '{{}}') AS skills, \
                    q.per_user_capacity AS capacity, coalesce(l.claimed, 0)::bigint AS claimed \
             FROM wq_grants g JOIN wq_queues q USING (queue_id) \
             LEFT JOIN wq_loads l ON l.username = $1 AND l.queue_id = g.queue_id \
             LEFT JOIN LATERAL unnest(g.skills) s ON true \
             WHERE g.username = $1 AND g.valid_from <= $2 AND (g.valid_until IS NULL OR g.valid_until > $2) \
               AND ($3::uuid[] IS NULL OR g.queue_id = ANY($3)) \
             GROUP BY g.queue_id, q.per_user_capacity, l.claimed \
         ), picked AS ( \
             SELECT t.task_id, t.version, e.skills, e.capacity, e.claimed \
             FROM eligible e CROSS JOIN LATERAL ( \
                 SELECT w.task_id, w.version, w.priority, w.created_at FROM wq_tasks w \
                 WHERE w.status = 'open' AND w.queue_id = e.queue_id \
                   AND (cardinality(w.group_keys) = 0 \
                        OR w.group_keys && (SELECT array_agg(e.queue_id::text || ':' || x) FROM unnest(e.skills) x)) \
                 ORDER BY w.priority DESC, w.created_at, w.task_id \
                 LIMIT 1 FOR UPDATE SKIP LOCKED \
             ) t \
             WHERE e.claimed < e.capacity \
             ORDER BY t.priority DESC, t.created_at, t.task_id \
             LIMIT 1 \
         ), taken AS ( \
             UPDATE wq_tasks w SET status = 'claimed', claimant = $1, version = w.version + 1 \
             FROM picked p WHERE w.task_id = p.task_id RETURNING w.task_id \
         ) \
         SELECT p.task_id AS picked_task_id, p.version AS picked_version, p.skills AS picked_skills, \
                p.capacity AS picked_capacity, p.claimed AS picked_claimed, ev.* \
         FROM picked p JOIN taken USING (task_id) \
         LEFT JOIN LATERAL ({}) ev ON true \
         ORDER BY ev.version",
        EventStore::stream_events_subquery("p.task_id")
    )
});

impl WorkQueues {
    /// Claims the next task for `user`: the highest priority, then oldest, open task in the
    /// queues (all of theirs, or those in `only`) where they hold a grant in force, have room
    /// under the capacity, and share a candidate group with the task (if it names any).
    ///
    /// With an idempotency key, a retry returns the task the first request claimed.
    pub async fn claim_next(
        &self,
        user: &str,
        only: Option<&[Uuid]>,
        idempotency_key: Option<&str>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let mut tx = begin_as_user(self.store.pool(), user).await?;
        // After the lock: a grant that ended while this waited no longer counts.
        let now = self.clock.now();
        // Under the user's lock, so that a retry racing its first request waits for it and
        // then finds its answer.
        if let Some(key) = idempotency_key {
            if let Some(done) = claimed_with_key(&mut tx, user, key).await? {
                return self.replay_of(&mut tx, done).await;
            }
        }

        // One statement: the user's queues (grants in force now, with room under the
        // capacity), and in each, the first open task in claim order they may take, walking
        // that queue's claim-order index; rows other claimers hold right now are skipped, not
        // waited for. The best of those heads wins, its row is marked claimed, and its events
        // come back with it, a row each. (With several queues, each queue's head stays locked
        // until this commits, so others take the next one there meanwhile.)
        let rows = sqlx::query(&CLAIM_NEXT_SQL)
            .bind(user)
            .bind(now)
            .bind(only.map(<[Uuid]>::to_vec))
            .fetch_all(&mut *tx)
            .await?;
        let Some(first) = rows.first() else {
            return Err(WorkQueueError::from(
                self.why_nothing(&mut tx, user, now, only).await?,
            ));
        };
        let task_id: Uuid = first.try_get("picked_task_id")?;
        let row_version: i64 = first.try_get("picked_version")?;
        let skills: Vec<String> = first.try_get("picked_skills")?;
        let capacity: i32 = first.try_get("picked_capacity")?;
        let claimed: i64 = first.try_get("picked_claimed")?;
        let load = Load {
            claimed: count(claimed),
            capacity: u32::try_from(capacity).unwrap_or(0),
        };
        let standing = Standing {
            member: true,
            lead: false,
            skills: skills
                .iter()
                .filter_map(|s| GroupLabel::parse(s).ok())
                .collect(),
        };
        let mut recorded = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>("position")?.is_some() {
                recorded.push(self.store.decode_row(row)?);
            }
        }
        let (mut version, mut task) = fold::<Task>(&recorded)?;
        if version != to_u64(row_version) {
            // The events were read as of the statement's start; the row was locked later, and
            // a change committed in between (an escalation, say) is in the row but not in what
            // was read. Under the row's lock now, the stream holds still: read it again.
            (version, task) = self.load_in::<Task>(&mut tx, task_id).await?;
        }
        check_row_version(task_id, to_u64(row_version), version)?;
        let command = TaskCommand::Claim {
            user: user.to_owned(),
            standing,
            load,
            next: true,
        };
        let events = task.decide(&command, now)?;
        if events.len() != 1 {
            // The row said open; the stream disagrees. The row's update is rolled back.
            return Err(StoreError::WrongExpectedVersion {
                stream_id: task_id,
                expected: ExpectedVersion::Exact(version),
                actual: version,
            }
            .into());
        }
        // The row already says what the claim does (the pick's UPDATE, one round trip saved);
        // this transaction commits both or neither.
        let (version, cursor) = self
            .append_in::<Task>(&mut tx, task_id, version, &events, metadata)
            .await?;
        if let (Some(key), Some(c)) = (idempotency_key, cursor) {
            let inserted = sqlx::query(
                "INSERT INTO wq_claim_keys (username, idempotency_key, task_id, version, transaction_id, position, claimed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(key)
            .bind(task_id)
            .bind(to_i64(version))
            .bind(to_i64(c.transaction_id))
            .bind(c.position)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                // Cannot happen under the user's lock; refuse rather than claim twice.
                return Err(CommandError::TooManyConflicts { attempts: 1 });
            }
        }
        tx.commit().await?;
        Ok(TaskWritten {
            task_id,
            version,
            events,
            cursor,
            replayed: false,
        })
    }

    /// A claim-next answered before (same idempotency key): the same answer, with the claim's
    /// event as it was recorded, whatever happened to the task since.
    pub(super) async fn replay_of(
        &self,
        conn: &mut PgConnection,
        mut done: TaskWritten,
    ) -> Result<TaskWritten, WorkQueueError> {
        let recorded = self.store.read_stream_in(conn, done.task_id).await?;
        done.events = recorded
            .iter()
            .filter(|e| e.version == done.version)
            .map(codec::decode::<Task>)
            .collect::<Result<_, _>>()?;
        Ok(done)
    }

    /// Why claim-next found nothing: no grant in force, no room, or no task (the rare path,
    /// so it may cost a second query).
    pub(super) async fn why_nothing(
        &self,
        tx: &mut PgConnection,
        user: &str,
        now: DateTime<Utc>,
        only: Option<&[Uuid]>,
    ) -> Result<NothingToClaim, sqlx::Error> {
        let (grants, with_room): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE coalesce(l.claimed, 0) < q.per_user_capacity) \
             FROM (SELECT DISTINCT queue_id FROM wq_grants \
                   WHERE username = $1 AND valid_from <= $2 AND (valid_until IS NULL OR valid_until > $2) \
                     AND ($3::uuid[] IS NULL OR queue_id = ANY($3))) g \
             JOIN wq_queues q USING (queue_id) \
             LEFT JOIN wq_loads l ON l.username = $1 AND l.queue_id = g.queue_id",
        )
        .bind(user)
        .bind(now)
        .bind(only.map(<[Uuid]>::to_vec))
        .fetch_one(tx)
        .await?;
        Ok(if grants == 0 {
            NothingToClaim::NoGrants
        } else if with_room == 0 {
            NothingToClaim::AtCapacity
        } else {
            NothingToClaim::NoOpenTask
        })
    }
}
