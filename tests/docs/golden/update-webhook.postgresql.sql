SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT contacts.id AS subject_id, contacts.account_id AS account_id, '' AS trigger_key 
FROM contacts JOIN accounts ON accounts.id = contacts.account_id 
WHERE EXISTS (SELECT * 
FROM events 
WHERE events.contact_id = contacts.id AND events.name = 'onboarding_completed' AND events.occurred_at > '2026-11-22 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00')) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-update-webhook' AND enrollments.subject_type = 'contact' AND enrollments.subject_id = occurrences.subject_id AND true))

-- step mark-onboarded if
SELECT enrollments.id 
FROM enrollments JOIN contacts ON contacts.id = enrollments.subject_id JOIN accounts ON accounts.id = contacts.account_id 
WHERE enrollments.id IN (1, 2) AND accounts.lifecycle_stage = 'onboarding'

-- step tell-slack if
SELECT enrollments.id 
FROM enrollments JOIN contacts ON contacts.id = enrollments.subject_id JOIN accounts ON accounts.id = contacts.account_id 
WHERE enrollments.id IN (1, 2) AND contacts.role IN ('admin', 'champion')
