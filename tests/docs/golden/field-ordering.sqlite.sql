SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE accounts.tier = 'tech_touch' AND accounts.seats_purchased >= 5 AND accounts.seats_purchased < 500 AND accounts.arr > 1000 AND accounts.arr <= 100000 AND accounts."plan" = 'starter' AND (accounts.lifecycle_stage NOT IN ('churned', 'offboarding')) AND (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'login' AND events.occurred_at > '2026-11-16 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-field-ordering' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-10-24 09:00:00.000000')))
