SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, CAST(events.id AS VARCHAR) AS trigger_key 
FROM accounts JOIN events ON events.account_id = accounts.id 
WHERE accounts.status = 'active' AND events.name = 'contact_left' AND events.occurred_at > '2026-11-21 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND CASE WHEN json_valid(events.properties) THEN JSON_EXTRACT(events.properties, '$."role"') END IN ('champion', 'exec_sponsor')) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'champion-left' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND enrollments.trigger_key = occurrences.trigger_key))
