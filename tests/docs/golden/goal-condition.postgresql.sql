SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE accounts.id IN (SELECT share_account.id 
FROM accounts AS share_account LEFT OUTER JOIN (SELECT events.account_id AS account_id, count(DISTINCT events.contact_id) AS n 
FROM events 
WHERE events.name = 'login' AND events.occurred_at > '2026-10-24 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00' AND events.contact_id IS NOT NULL GROUP BY events.account_id) AS active_contacts ON active_contacts.account_id = share_account.id JOIN (SELECT share_contact.account_id AS account_id, count(*) AS total 
FROM contacts AS share_contact GROUP BY share_contact.account_id) AS contact_count ON contact_count.account_id = share_account.id 
WHERE contact_count.total > 0 AND coalesce(active_contacts.n, 0) * 100 >= contact_count.total * 90.0)) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-goal-condition' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-05-27 09:00:00')))

-- goal
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND accounts.seats_purchased > 50 AND enrollments.enrolled_at >= '2026-09-24 09:00:00'
