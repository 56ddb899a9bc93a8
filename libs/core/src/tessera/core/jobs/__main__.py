"""`python -m tessera.core.jobs worker|beat [options]`: tessera-worker and tessera-beat."""

from tessera.core.jobs._commands import main

if __name__ == "__main__":
    main()
