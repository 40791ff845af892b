SELECT occurrences.subject_id, occurrences.account_id, CAST(min(CAST(occurrences.trigger_key AS BIGINT)) AS VARCHAR) AS trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, CAST(events.id AS VARCHAR) AS trigger_key 
FROM accounts JOIN events ON events.account_id = accounts.id 
WHERE events.name = 'nps_response' AND events.occurred_at > '2026-11-21 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND CASE WHEN json_valid(events.properties) THEN CASE WHEN json_type(events.properties, '$."score"') IN ('integer', 'real') THEN json_extract(events.properties, '$."score"') END END <= 6) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-event-trigger' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active'))) GROUP BY occurrences.subject_id, occurrences.account_id
