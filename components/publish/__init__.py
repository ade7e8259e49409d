"""Getting a blessed model to where it is served: storage, push, versions, registry, predict."""
