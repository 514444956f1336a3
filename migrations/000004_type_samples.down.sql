drop table public.type_samples;
drop type public.mood;
