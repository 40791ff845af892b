SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE accounts.renewal_date BETWEEN '2026-11-23' AND '2027-02-21' AND accounts.contract_start < '2025-11-23' AND (accounts.renewal_date > '2026-12-23' OR accounts.contract_start BETWEEN '2024-11-23' AND '2026-11-23') AND (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'login' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-relative-dates' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-08-25 09:00:00.000000')))
