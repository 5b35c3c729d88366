from server.bots.runner import main

raise SystemExit(main())
