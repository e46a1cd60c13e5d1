"""Process roles of a hospital node: any number of API processes, and one worker process
that holds the hospital's fenced worker lease (``node.roles.lease.LeaseKeeper``) and runs
every background worker."""
