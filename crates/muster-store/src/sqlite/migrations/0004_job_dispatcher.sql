-- Which server replica started a job; a restarted replica writes off only its own.
ALTER TABLE jobs ADD COLUMN dispatcher TEXT;
