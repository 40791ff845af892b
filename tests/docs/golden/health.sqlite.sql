SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23T09:00' AS trigger_key 
FROM accounts 
WHERE accounts.id IN (SELECT health_now.account_id 
FROM health_history AS health_now JOIN (SELECT health_days.account_id AS account_id, max(health_days.computed_on) AS day 
FROM health_history AS health_days 
WHERE health_days.computed_on <= '2026-11-23' GROUP BY health_days.account_id) AS health_latest ON health_now.account_id = health_latest.account_id AND health_now.computed_on = health_latest.day 
WHERE health_now.score < 70.0) AND accounts.id IN (SELECT health_now.account_id 
FROM health_history AS health_now JOIN (SELECT health_days.account_id AS account_id, max(health_days.computed_on) AS day 
FROM health_history AS health_days 
WHERE health_days.computed_on <= '2026-11-23' GROUP BY health_days.account_id) AS health_latest ON health_now.account_id = health_latest.account_id AND health_now.computed_on = health_latest.day 
WHERE CASE WHEN json_valid(health_now.components) THEN CASE WHEN json_type(health_now.components, '$."adoption"."points"') IN ('integer', 'real') THEN json_extract(health_now.components, '$."adoption"."points"') END END < 40.0) AND (accounts.id NOT IN (SELECT health_now.account_id 
FROM health_history AS health_now JOIN (SELECT health_days.account_id AS account_id, max(health_days.computed_on) AS day 
FROM health_history AS health_days 
WHERE health_days.computed_on <= '2026-11-23' GROUP BY health_days.account_id) AS health_latest ON health_now.account_id = health_latest.account_id AND health_now.computed_on = health_latest.day 
WHERE health_now.score > 85.0)) AND accounts.id IN (SELECT health_now.account_id 
FROM health_history AS health_now JOIN (SELECT health_days.account_id AS account_id, max(health_days.computed_on) AS day 
FROM health_history AS health_days 
WHERE health_days.computed_on <= '2026-11-23' GROUP BY health_days.account_id) AS health_latest ON health_now.account_id = health_latest.account_id AND health_now.computed_on = health_latest.day JOIN (SELECT health_past.account_id AS account_id, max(health_past.score) AS peak 
FROM health_history AS health_past 
WHERE health_past.computed_on >= '2026-10-24' AND health_past.computed_on <= '2026-11-23' GROUP BY health_past.account_id) AS health_peak ON health_peak.account_id = health_now.account_id 
WHERE health_now.score <= health_peak.peak - 15.0) AND accounts.id IN (SELECT health_now.account_id 
FROM health_history AS health_now JOIN (SELECT health_days.account_id AS account_id, max(health_days.computed_on) AS day 
FROM health_history AS health_days 
WHERE health_days.computed_on <= '2026-11-23' GROUP BY health_days.account_id) AS health_latest ON health_now.account_id = health_latest.account_id AND health_now.computed_on = health_latest.day 
WHERE health_now.band IN ('at_risk', 'unhealthy'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-health' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-10-24 09:00:00.000000'))) AND NOT (EXISTS (SELECT * 
FROM condition_state 
WHERE condition_state.playbook_id = 'doc-health' AND condition_state.subject_type = 'account' AND condition_state.subject_id = occurrences.subject_id AND condition_state.armed IS 0))
