-- Which credentials a physician holds, by kind and jurisdiction: the write side's way to find a
-- physician's credential streams, whose ids derive from a number other commands do not know
-- (a DEA renewal asks whether the physician holds a state CSR). Written before a
-- registration's append; every reader loads the credential's stream and checks it, so a row
-- whose append failed is harmless. Not a read model: no projection writes it.
CREATE TABLE credential_holders (
    physician_id  uuid NOT NULL,
    kind          text NOT NULL,
    jurisdiction  text NOT NULL,
    credential_id uuid NOT NULL,
    PRIMARY KEY (physician_id, kind, jurisdiction, credential_id)
);

COMMENT ON TABLE credential_holders IS 'Write-side lookup: candidate credential streams per physician, kind and jurisdiction.';

-- Credentials registered before this table existed.
INSERT INTO credential_holders (physician_id, kind, jurisdiction, credential_id)
SELECT (payload->>'physician_id')::uuid, payload->>'kind', payload->>'jurisdiction', stream_id
FROM events
WHERE stream_type = 'credential' AND event_type = 'CredentialRegistered'
ON CONFLICT DO NOTHING;
