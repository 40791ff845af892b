SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-17T10:00:00' AS trigger_key 
FROM accounts 
WHERE accounts.status = 'active' AND accounts.id IN (SELECT health_now.account_id 
FROM health_history AS health_now JOIN (SELECT health_days.account_id AS account_id, max(health_days.computed_on) AS day 
FROM health_history AS health_days 
WHERE health_days.computed_on <= '2026-11-23' GROUP BY health_days.account_id) AS health_latest ON health_now.account_id = health_latest.account_id AND health_now.computed_on = health_latest.day 
WHERE health_now.score > 85.0) AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'support_ticket_opened' AND events.occurred_at > '2026-10-24 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00')) AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'review_submitted' AND events.occurred_at > '2024-11-23 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'review-request' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2025-11-23 09:00:00')))
