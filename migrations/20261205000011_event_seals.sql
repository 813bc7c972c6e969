-- The hash chain over the log (see eventstore/src/seal.rs).
--
-- One row per event, in read order, written by the sealer behind the readable head of the log:
-- never by the writers, so appends do not wait on each other for it. Append-only like the log
-- itself (the same triggers; caseledger_secure() grants the server INSERT and SELECT only).
CREATE TABLE event_seals (
    -- The event's number in the chain: 1 for the first event in read order, consecutive after,
    -- so the last one is also the count of events sealed.
    seq            bigint PRIMARY KEY CHECK (seq > 0),
    -- The event sealed (events.position) and its transaction, to resume in read order.
    position       bigint NOT NULL UNIQUE,
    transaction_id xid8 NOT NULL,
    -- SHA-256(previous row's hash || the event's record), 32 bytes.
    hash           bytea NOT NULL CHECK (length(hash) = 32),
    -- Two bytes of SHA-256 per record field, so that a verification can name what was changed.
    fields         bytea NOT NULL
);

COMMENT ON TABLE event_seals IS 'Hash chain over the event log in read order; verified by `caseledger audit verify`.';

CREATE TRIGGER event_seals_append_only
    BEFORE UPDATE OR DELETE ON event_seals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite();
CREATE TRIGGER event_seals_no_truncate
    BEFORE TRUNCATE ON event_seals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite();
ALTER TABLE event_seals ENABLE ALWAYS TRIGGER event_seals_append_only;
ALTER TABLE event_seals ENABLE ALWAYS TRIGGER event_seals_no_truncate;

SELECT caseledger_secure();
