export function cpusGiven(read?: (file: string) => string): { cpus: number; source: string };
