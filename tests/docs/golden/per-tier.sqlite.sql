SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE accounts.tier = 'high_touch' AND accounts.id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'support_ticket_opened' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' GROUP BY events.account_id 
HAVING count(*) >= 10) OR accounts.tier = 'low_touch' AND accounts.id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'support_ticket_opened' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' GROUP BY events.account_id 
HAVING count(*) >= 20) OR accounts.tier = 'tech_touch' AND accounts.id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'support_ticket_opened' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' GROUP BY events.account_id 
HAVING count(*) >= 30) OR (accounts.tier NOT IN ('high_touch', 'low_touch', 'tech_touch')) AND accounts.id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'support_ticket_opened' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' GROUP BY events.account_id 
HAVING count(*) >= 40)) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-per-tier' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-10-24 09:00:00.000000')))
