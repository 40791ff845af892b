SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT contacts.id AS subject_id, contacts.account_id AS account_id, '' AS trigger_key 
FROM contacts JOIN accounts ON accounts.id = contacts.account_id 
WHERE contacts.id IN (SELECT events.contact_id 
FROM events 
WHERE events.contact_id IS NOT NULL AND events.name = 'login' AND events.occurred_at <= '2026-11-23 09:00:00' GROUP BY events.contact_id 
HAVING min(events.occurred_at) > '2026-11-22 09:00:00')) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-branch-exit' AND enrollments.subject_type = 'contact' AND enrollments.subject_id = occurrences.subject_id AND true))

-- step check if
SELECT enrollments.id 
FROM enrollments JOIN contacts ON contacts.id = enrollments.subject_id JOIN accounts ON accounts.id = contacts.account_id 
WHERE enrollments.id IN (1, 2) AND contacts.role != 'billing'

-- step check branch
SELECT enrollments.id 
FROM enrollments JOIN contacts ON contacts.id = enrollments.subject_id JOIN accounts ON accounts.id = contacts.account_id 
WHERE enrollments.id IN (1, 2) AND (EXISTS (SELECT * 
FROM ledger, message_events 
WHERE ledger.enrollment_id = enrollments.id AND ledger.step_id = 'nudge' AND message_events.send_key = ledger.send_key AND message_events.event IN ('open', 'click') AND message_events.occurred_at <= '2026-11-23 09:00:00' AND message_events.occurred_at <= (ledger.created_at + make_interval(secs => 259200))))

-- step done if
SELECT enrollments.id 
FROM enrollments JOIN contacts ON contacts.id = enrollments.subject_id JOIN accounts ON accounts.id = contacts.account_id 
WHERE enrollments.id IN (1, 2) AND contacts.locale IS NOT NULL
