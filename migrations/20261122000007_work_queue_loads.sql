-- Work queues: each user's load per queue, kept as a counter instead of counted on demand.
--
-- Claim-next checks the claimer's load against the queue's per-user capacity on every call.
-- Counting the claimed rows of wq_tasks costs one index entry and heap visit per task the user
-- holds (up to the capacity, 1,000), under the user's lock; this row answers in one look-up.
-- A trigger on wq_tasks keeps it, so no command can change a claim and forget the counter:
-- it moves in the same statement, and the same transaction, as the row it counts.

CREATE TABLE wq_loads (
    username  text NOT NULL,
    queue_id  uuid NOT NULL REFERENCES wq_queues (queue_id),
    -- How many of the queue's tasks the user holds claimed.
    claimed   integer NOT NULL CHECK (claimed >= 0),
    -- The sum of those tasks' priorities (the priority-weighted strategy's measure of load).
    weight    integer NOT NULL CHECK (weight >= 0),
    PRIMARY KEY (username, queue_id)
);

COMMENT ON TABLE wq_loads IS 'Claimed tasks per user and queue, kept by a trigger on wq_tasks.';

-- Takes the old row's claim off its holder and puts the new row's on; an UPDATE that moves a
-- claimed task's priority does both to the same counter. A hand-off touches two users'
-- counters: it locks them in username order first, so that two hand-offs in opposite
-- directions (u1 to u2 and u2 to u1) cannot each hold one and wait for the other.
CREATE FUNCTION wq_track_load() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'claimed' AND NEW.status = 'claimed'
       AND OLD.claimant IS DISTINCT FROM NEW.claimant THEN
        PERFORM 1 FROM wq_loads
        WHERE (username = OLD.claimant AND queue_id = OLD.queue_id)
           OR (username = NEW.claimant AND queue_id = NEW.queue_id)
        ORDER BY username, queue_id
        FOR NO KEY UPDATE;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.status = 'claimed' THEN
        UPDATE wq_loads SET claimed = claimed - 1, weight = weight - OLD.priority
        WHERE username = OLD.claimant AND queue_id = OLD.queue_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'claimed' THEN
        INSERT INTO wq_loads AS l (username, queue_id, claimed, weight)
        VALUES (NEW.claimant, NEW.queue_id, 1, NEW.priority)
        ON CONFLICT (username, queue_id)
        DO UPDATE SET claimed = l.claimed + 1, weight = l.weight + EXCLUDED.weight;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER wq_tasks_load_insert
    AFTER INSERT OR DELETE ON wq_tasks
    FOR EACH ROW EXECUTE FUNCTION wq_track_load();
-- Only updates that can move a load run the function.
CREATE TRIGGER wq_tasks_load_update
    AFTER UPDATE ON wq_tasks
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.claimant IS DISTINCT FROM NEW.claimant
          OR OLD.queue_id IS DISTINCT FROM NEW.queue_id
          OR OLD.priority IS DISTINCT FROM NEW.priority)
    EXECUTE FUNCTION wq_track_load();

-- The loads of the claims made before this migration.
INSERT INTO wq_loads (username, queue_id, claimed, weight)
SELECT claimant, queue_id, count(*), sum(priority)
FROM wq_tasks
WHERE status = 'claimed'
GROUP BY claimant, queue_id;

-- The counters replace the only write-side reads this index served.
DROP INDEX wq_tasks_by_claimant;
