"""Result cells: their typed identity (:mod:`.cells`), the store (:mod:`.store`) and queries (:mod:`.query`)."""
