import type { Plugin } from 'vite';

export function minifyWgsl(source: string): string;
export function wgslMinify(): Plugin;
