SELECT occurrences.subject_id, occurrences.account_id, CAST(min(CAST(occurrences.trigger_key AS BIGINT)) AS VARCHAR) AS trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, CAST(events.id AS VARCHAR) AS trigger_key 
FROM accounts JOIN events ON events.account_id = accounts.id 
WHERE accounts.status = 'active' AND accounts.tier IN ('low_touch', 'tech_touch') AND accounts.id IN (SELECT health_now.account_id 
FROM health_history AS health_now JOIN (SELECT health_days.account_id AS account_id, max(health_days.computed_on) AS day 
FROM health_history AS health_days 
WHERE health_days.computed_on <= '2026-11-23' GROUP BY health_days.account_id) AS health_latest ON health_now.account_id = health_latest.account_id AND health_now.computed_on = health_latest.day 
WHERE health_now.score < 70.0) AND events.name = 'nps_response' AND events.occurred_at > '2026-11-16 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND CASE WHEN json_valid(events.properties) THEN CASE WHEN json_type(events.properties, '$."score"') IN ('integer', 'real') THEN json_extract(events.properties, '$."score"') END END >= 7 AND CASE WHEN json_valid(events.properties) THEN CASE WHEN json_type(events.properties, '$."score"') IN ('integer', 'real') THEN json_extract(events.properties, '$."score"') END END <= 8) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'survey-low-health' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-08-25 09:00:00.000000'))) GROUP BY occurrences.subject_id, occurrences.account_id
