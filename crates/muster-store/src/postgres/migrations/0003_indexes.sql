-- Counting enrollments per kind and window is asked on every auto-enrollment.
CREATE INDEX workers_by_via ON workers(enrolled_via, created_at);
