throw new Error("config refused: DATABASE_URL is not set");
