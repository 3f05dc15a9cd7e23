"""Query-intent refiner: Q + clicked documents -> Q* (mining, model, evaluation, jobs, the near-real-time queue)."""
