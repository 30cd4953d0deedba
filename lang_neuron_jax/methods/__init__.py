"""Ways to find and steer a language, behind one interface (:mod:`.base`)."""
